"""The command lines, one module each (`nst_tf.cli` lists them): absl flags at the door, the options
checked and one `nst_tf.plan.Plan` resolved there, then the library does the work. `common` holds
what every command shares."""
