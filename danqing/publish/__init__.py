"""Publishing: the local release folder, its dataset card and plots, and uploads to the hubs."""
