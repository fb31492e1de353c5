"""The lab: training, dataset building and evaluation harnesses, by capability.

Nothing that serves requests imports this package (an import-linter contract); the lab reaches models
through the ports and adapters it trains, and the CLI loads its commands lazily.

- ``demo_world``: the trainer of the demo world's text-to-image model and its evaluation;
- ``prompts``: the DiffChat rewriter's SFT and RL, and the preference reward's fitting;
- ``edits``: DAFNet's meta-training and the DAFSet builder;
- ``knowledge``: the geonames question set behind calibration and the knowledge benchmark.
"""
