"""The batch engine: inputs pulled per free slot and created, items tracked to their consumer, on a journal of one run or a shared one."""
