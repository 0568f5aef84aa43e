"""What training, export and the on-device runtime share; imports neither TensorFlow nor Keras."""
