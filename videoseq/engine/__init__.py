"""The engine: the loops (``loops``), the objectives (``objectives``) and the run (``trainer``).

``trainer.fit`` trains a model as a config says; ``loops.train_one_epoch`` and
``loops.evaluate`` are the two loop functions it and ``videoseq eval`` are built on.
"""
