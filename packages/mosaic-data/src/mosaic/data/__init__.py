"""mosaic.data"""
