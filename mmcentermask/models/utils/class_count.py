"""The number of foreground classes, checked when a detector is built."""


def check_class_count(num_classes: object, detector: str) -> None:
    """Refuse a class count that would only fail later, deep inside torch.

    A head built for 0 classes has classifier convolutions with 0 output
    channels, which fail at the first forward pass with a torch error that
    names neither the setting nor the dataset.

    Args:
        num_classes (object): The detector's ``num_classes`` setting.
        detector (str): The detector's name, for the message.

    Raises:
        ValueError: ``num_classes`` is not an integer of at least 1.
    """
    if isinstance(num_classes, int) and not isinstance(
            num_classes, bool) and num_classes >= 1:
        return
    raise ValueError(
        f'{detector}: num_classes={num_classes!r}, but it needs at least '
        'one foreground class. Set model.num_classes to the number of '
        "classes of your dataset (e.g. num_classes=len(classes) with the "
        "names in the dataset's metainfo=dict(classes=(...)))")
