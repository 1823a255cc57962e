"""Test doubles for the robot package (a fake ``polymetis`` module, ...)."""
