"""Tests of the Debian package and the FreeBSD rc.d script (packaging/)."""
