"""Image handling with Pillow, numpy and OpenCV: safe decoding, resizing, outpaint canvases, masks and
ControlNet preprocessors (canny edges, depth maps)."""
