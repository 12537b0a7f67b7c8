"""SMS: text encoding and segmentation, independent of the transport."""
