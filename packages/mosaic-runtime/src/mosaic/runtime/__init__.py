"""mosaic.runtime"""
