"""A 10-minute 4K video for the memory check: 15,000 frames (25 fps) of 3840×2160, a still gradient
with a small moving square (cheap to encode: about 15 minutes on one core, 2.9 MB).

    python benchmarks/make_4k_video.py /tmp/v4k_10min.mp4
    /usr/bin/time -v xvfb-run -a -s "-screen 0 1366x768x24" napari-polyp app /tmp/v4k_10min.mp4 \
        --screenshot /tmp/v4k.png          # "Maximum resident set size": the peak
"""
import sys
import numpy as np
import imageio_ffmpeg

w, h, n = 3840, 2160, 15000
yy, xx = np.mgrid[0:h, 0:w]
base = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], -1).astype(np.uint8)
writer = imageio_ffmpeg.write_frames(sys.argv[1], (w, h), fps=25, codec="libx264", quality=None, bitrate=None,
                                     pix_fmt_in="rgb24", output_params=["-preset", "ultrafast", "-crf", "40",
                                                                        "-threads", "1"], macro_block_size=16)
writer.send(None)
for t in range(n):
    frame = base.copy() if t % 500 == 0 else frame
    x = (t * 7) % (w - 64)
    frame[1000:1064, x:x + 64] = (250, 200, 40)
    writer.send(frame)
writer.close()
