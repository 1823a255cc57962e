"""Qt widgets of the labelling app (PyQt5). They read and drive a
:class:`~pref_rl_gui.model.LabelingModel` and never touch ROS."""
