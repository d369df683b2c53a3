"""napari dock widgets (Qt via qtpy): Segment, Clean up mask, Review, Fine-tune.

Each widget is a thin layer over headless functions; napari.yaml names them
by module (``napari_polyp.widgets.segment:SegmentWidget`` and so on), so this
package imports nothing itself.
"""
