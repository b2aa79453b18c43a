"""The ROS-free core: tensors, cameras and configs in, tensors out."""
