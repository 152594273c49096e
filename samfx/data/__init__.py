"""samfx data: the HDF5 store (store), torch datasets (datasets, augment), the synthetic echo
generator (synth), importers (importers.camus [+ camus_mhd, metaimage] / us30k / busi / echonet /
echonet_pediatric), stats and preview.

This package never imports plugins; import submodules directly (torch is needed only by
``datasets`` and ``augment``).
"""
