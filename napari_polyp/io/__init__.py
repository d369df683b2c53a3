"""Reading images, folders and videos (headless; napari's reader builds on these)."""
from .images import IMAGE_EXTENSIONS, is_image_path, list_images, read_image, read_image_with_notes
from .video import VIDEO_EXTENSIONS, VideoFrames, is_video_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoFrames",
    "is_image_path",
    "is_video_path",
    "list_images",
    "read_image",
    "read_image_with_notes",
]
