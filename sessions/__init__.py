"""What users do: training, trainee profiles, consultation sessions, and the ``medverse`` command line."""
