"""HAT, Hardware-Aware Transformers (Wang et al., ACL 2020): an elastic weight-sharing SuperTransformer trained by
uniform sampling, a latency dataset measured on the target (LiteRT on the host, or a phone over adb with the Android app), a
latency predictor, and an evolutionary search for the SubTransformer with the lowest inherited validation loss
under a latency budget.

    space             design spaces (YAML choices) and SubTransformer architectures
    elastic           the elastic layers: front slices of the SuperTransformer's weights
    supertransformer  the SuperTransformer, sampling, inherited-weight loss, extraction as an ordinary run
    training          `tfmobile hat train`: model.fit with one sampled SubTransformer per update
    latency           the latency dataset and its measurers
    predictor         HAT's MLP latency predictor and its least-squares baselines
    search            the evolutionary search and its random-search control
"""
