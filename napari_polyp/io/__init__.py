"""Reading images, masks, folders and videos (headless, no torch; napari's reader builds on these)."""
from .images import (
    IMAGE_EXTENSIONS,
    as_rgb_uint8,
    find_image,
    is_image_path,
    list_images,
    read_image,
    read_image_with_notes,
)
from .masks import binarize_mask, decode_mask, encode_mask_png, read_mask
from .video import VIDEO_EXTENSIONS, VideoFrames, is_video_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoFrames",
    "as_rgb_uint8",
    "binarize_mask",
    "decode_mask",
    "encode_mask_png",
    "find_image",
    "is_image_path",
    "is_video_path",
    "list_images",
    "read_image",
    "read_image_with_notes",
    "read_mask",
]
