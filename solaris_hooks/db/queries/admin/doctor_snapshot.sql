-- Every check reads the same snapshot, and writes nothing.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY
