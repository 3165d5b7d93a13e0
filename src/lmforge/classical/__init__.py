"""Classical classifiers for the auto portfolio: TF-IDF + linear heads (`linear`), their search
over heads and C (`search`), ONNX export of the head (`onnx`), and a linear probe on frozen
encoder embeddings shipped as an ordinary transformer folder (`embedding_probe`).

Heavy imports (scikit-learn, skops, skl2onnx, torch) stay inside these modules, which the
package does not import, so `import lmforge.classical` is cheap.
"""
