"""int8 quantisation: the quantiser the statistics read codes from, and QAT networks with
allowed-code tables and integer inference."""
