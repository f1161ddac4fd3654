-- Every row will be read: plan for the whole result, not for the first rows fast.
SET LOCAL cursor_tuple_fraction = 1;
