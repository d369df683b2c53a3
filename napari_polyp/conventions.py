"""Facts that several parts of the package share, defined once.

Imports nothing: io (no torch), training (no Qt), corrections and widgets all read them.
"""

# A probability at or above this is foreground (``prediction.binary_mask`` applies the rule):
# the default of every mask threshold, in the app, the command line and training metrics.
DEFAULT_THRESHOLD = 0.5

# The metadata key that says what a layer is for ("mask", "probability", "attention", ...;
# ``layers.py`` names most roles).
ROLE = "napari_polyp_role"
# Roles given by the reader and the sample data (napari_polyp.io), asked for by the app and widgets.
PRE_ANNOTATION = "pre_annotation"  # a pre-annotated video's masks (a mask store)
PRE_ANNOTATION_PROBABILITY = "pre_annotation_probability"  # its probabilities: never an image to segment
REFERENCE_FILE = "reference_file"  # a mask file opened on its own
GROUND_TRUTH = "ground_truth"  # a sample's true mask

# The mask's colour, and a 0/1 mask's label colours (napari's DirectLabelColormap color_dict:
# transparent background): the reader's layers and the app's look alike.
MASK_COLOR = "#00e5ff"
MASK_COLOR_DICT = {None: "transparent", 0: "transparent", 1: MASK_COLOR}
