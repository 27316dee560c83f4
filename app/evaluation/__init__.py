"""Evaluation: novel-view metrics against ground truth and a ground-truth-free 3D-consistency metric."""
