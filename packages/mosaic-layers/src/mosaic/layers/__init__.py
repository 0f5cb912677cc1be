"""mosaic.layers"""
