"""The demo world's vocabulary: shapes, colours, positions, sizes, backgrounds and styles, and how Chinese
and English name them. A data table."""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "star", "heart")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "black", "white")
# Colours the demo model was never shown: scenes, captions and the checker know them, so a LoRA trained on a few
# scenes can teach one (docs/training.md). Samplers draw from ``COLOURS`` unless told otherwise.
NEW_COLOURS = ("pink",)
ALL_COLOURS = COLOURS + NEW_COLOURS
# Row-major 3x3 grid.
POSITIONS = (
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
)
SIZES = ("large", "small")
BACKGROUNDS = ("gray", "white", "black", "blue")
STYLES = ("outline", "gradient", "shadow")
DEFAULT_BACKGROUND = "gray"

# The first word of each tuple is the canonical one used by render-time captions in tests.
SHAPE_ZH = {
    "circle": ("圆形", "圆圈", "圆"),
    "square": ("正方形", "方形", "方块"),
    "triangle": ("三角形", "三角"),
    "star": ("星形", "五角星", "星星"),
    "heart": ("心形", "爱心"),
}
COLOUR_ZH = {
    "red": "红",
    "orange": "橙",
    "yellow": "黄",
    "green": "绿",
    "blue": "蓝",
    "purple": "紫",
    "black": "黑",
    "white": "白",
    "gray": "灰",
    "pink": "粉",
}
POSITION_ZH = {
    "top-left": ("左上", "左上角", "左上方"),
    "top": ("中上", "上方", "顶部"),
    "top-right": ("右上", "右上角", "右上方"),
    "left": ("左中", "左边", "左侧"),
    "center": ("中间", "中央", "正中间"),
    "right": ("右中", "右边", "右侧"),
    "bottom-left": ("左下", "左下角", "左下方"),
    "bottom": ("中下", "下方", "底部"),
    "bottom-right": ("右下", "右下角", "右下方"),
}
SIZE_ZH = {"large": "大", "small": "小"}
STYLE_ZH = {"outline": ("描边", "轮廓线"), "gradient": ("渐变",), "shadow": ("阴影", "投影")}

SHAPE_EN = {name: (name,) for name in SHAPES}
POSITION_EN = {
    "top-left": ("top left", "upper left"),
    "top": ("top", "top center"),
    "top-right": ("top right", "upper right"),
    "left": ("left", "middle left"),
    "center": ("center", "middle"),
    "right": ("right", "middle right"),
    "bottom-left": ("bottom left", "lower left"),
    "bottom": ("bottom", "bottom center"),
    "bottom-right": ("bottom right", "lower right"),
}
SIZE_EN = {"large": ("big", "large"), "small": ("small", "little")}
STYLE_EN = {"outline": ("outlined", "outline"), "gradient": ("gradient",), "shadow": ("shadowed", "shadow")}
COLOUR_EN = {name: (name, "grey") if name == "gray" else (name,) for name in (*ALL_COLOURS, "gray")}
