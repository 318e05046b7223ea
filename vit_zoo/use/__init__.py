"""Using a model: images, preprocessing, labels, predict, features, attention maps, embed, evaluate."""
