"""The local development stack behind `./dev.sh`: start it, demo it, test against it."""
