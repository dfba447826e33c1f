"""The compiled artifact: its model (``model``), how a program becomes JSON (``serializer``) and
where it lives on disk (``store``). None of these modules knows about compile or gate mode."""
