"""m3cvcav.bench"""
