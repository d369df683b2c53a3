"""napari-polyp: review and correct AI segmentations of colonoscopy and dermoscopy images."""
__version__ = "0.1.0"
