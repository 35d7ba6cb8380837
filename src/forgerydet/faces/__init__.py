"""Faces from media: which files are media and which frames are sampled (media.py), MTCNN detection and
cropping (detect.py), tracks across frames (track.py), one file -> tracked faces (pipeline.py), still images in a
process pool (stills.py), and the faces.csv index of `forgerydet extract` (index.py)."""
