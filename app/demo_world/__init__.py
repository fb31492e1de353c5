"""The demo world's vocabulary and grammar: the scenes its model draws (coloured shapes, positions,
sizes), how Chinese and English prompts name them, and the instruction templates of prompt sessions.

Pure Python like the core domain, but not part of it: the core knows images and prompts, not
circles and squares. Ports, use cases and adapters that read scenes import it.
"""
