"""The geonames question set and corpus for calibration and the knowledge benchmark."""
