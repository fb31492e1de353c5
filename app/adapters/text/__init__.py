"""Word statistics for METEOR and GECE: jieba segmentation, wordfreq frequencies, nltk's Porter stemmer and WordNet."""
