"""What ships: the wheel and its templates, the Dockerfile, compose, install and support scripts."""
