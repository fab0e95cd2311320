"""Deployment: the deployed graph, ONNX export with its metadata and parity check, fp16 and int8 variants,
in-graph preprocessing, the zoo.format schema and golden vectors."""
