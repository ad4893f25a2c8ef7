"""Task objects: what `reelrt.runtime.load` returns for each manifest task.

image.py (ImageClassifier), text.py (TextClassifier) and generation/ (TextGenerator with its
decoder, sampler and detokenizer) sit on model.py's Model. Each is imported only when a
bundle of its task is loaded, so a text app never imports OpenCV."""
