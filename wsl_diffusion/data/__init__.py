"""Datasets as uint8 NHWC arrays (digits, image folders, tarballs, .npz, CIFAR-10 pickles) and image files on disk."""
