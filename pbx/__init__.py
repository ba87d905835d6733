"""Everything that speaks to Asterisk: AMI, FastAGI, provisioning and supervising the process."""
