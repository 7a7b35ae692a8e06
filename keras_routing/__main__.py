from keras_routing.app.cli import entry_point

entry_point()
