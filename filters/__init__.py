"""m3cvcav.filters"""
