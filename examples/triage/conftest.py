import dspy

# The embedded 135M model cannot follow ChatAdapter's `[[ ## field ## ]]` markers. JSONAdapter asks
# for a JSON object, and llama.cpp constrains the answer to the program's output schema, so even
# this model answers in the program's fields (a Literal field gets one of its values).
dspy.configure(adapter=dspy.JSONAdapter())
