"""What the training notebooks build from their parameters: the data splits and the training
config."""
from vitlib.data import get_dataset
from vitlib.train import get_recipe


def load_data(dataset, data_dir, img_size, train_size, seed, val_size=0):
    """(train, val, test) as the notebooks take them, all resized to `img_size`. val: `val_size`
    images held out of the training split (class-stratified, one fixed draw whatever the seed; None
    when 0); train: the rest, subset to `train_size` images (class-balanced, drawn by `seed`; 0: all).
    data_dir "": the default places ($VITLIB_DATA, then ~/.cache/vitlib)."""
    common = dict(img_size=img_size, val_size=val_size or None)
    train = get_dataset(dataset, "train", data_dir or None, train_size=train_size or None, seed=seed, **common)
    val = get_dataset(dataset, "val", data_dir or None, **common) if val_size else None
    return train, val, get_dataset(dataset, "test", data_dir or None, img_size=img_size)


def training_config(recipe, seed, train_args, *, epochs=0, steps=0, batch_size=0, lr=0.0, precision="auto"):
    """The named recipe with the run's seed, the lengths that are set (0: the recipe's), its
    precision and any other TrainConfig fields (train_args)."""
    if precision != "auto" and train_args.get("precision", precision) != precision:
        raise ValueError(f"precision={precision!r} and train_args precision={train_args['precision']!r}: give one")
    lengths = {k: v for k, v in dict(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr).items() if v}
    return get_recipe(recipe, seed=seed, **lengths, **{"precision": precision, **train_args})
