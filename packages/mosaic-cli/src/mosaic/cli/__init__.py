"""mosaic.cli"""
