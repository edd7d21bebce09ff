"""The ``m3cvc`` profile's engines (the papers' stack): VLM dialogue describer, VQ over a diffusion VAE, text-guided
diffusion keyframe generator, first-last-frame video diffusion clip generator. See docs/m3cvc.md."""
