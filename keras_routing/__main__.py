from keras_routing.cli import entry_point

entry_point()
