"""Long real paragraphs (about 220 words each) that reach a text model's max_length when tokenised.

Optimisation gates for text models are judged on real text; short sentences alone hide what int8
does to attention over long sequences, so these join the sample texts as their own verification case.
"""

LONG_TEXTS = [
    "Moving a model from a research notebook into a service that answers thousands of requests a day changes "
    "what matters about it. In the notebook, the questions were about accuracy on a held-out set and about "
    "how quickly the next experiment could start. In production, the questions are about how many "
    "milliseconds a request waits, how much memory each worker holds, how long a new container takes to "
    "become ready, and whether the answers on Tuesday are the same as the answers on Monday. A team that "
    "exports its network to a portable format usually does it for the second set of reasons, and then "
    "discovers that the first set has not gone away: the exported graph must still give the answers the "
    "original gave, on the inputs that real users send, at every sequence length and batch size the service "
    "allows. Checking one tensor on one random input proves very little, because the failures that matter "
    "tend to hide in the corners: a padding mask that is applied in one place and forgotten in another, a "
    "dimension that was fixed during tracing, a quantised layer whose activations have a few enormous values, "
    "or a tokenizer that splits a rare word differently from the one used in training.",
    "The old harbour town wakes slowly in winter. Before the first ferry leaves, the baker on the corner has "
    "already pulled three trays of bread from the oven, and the smell drifts down the narrow street towards "
    "the water, where a handful of fishermen are untangling nets under yellow lamps. The tourists who crowd "
    "the promenade in August are gone, and the town belongs again to the people who live in it all year: the "
    "retired teacher who walks her dog along the sea wall at exactly seven, the mechanic who repairs outboard "
    "motors in a shed that smells of oil and salt, the children who run to the school bus with their coats "
    "unbuttoned despite the wind. By nine the market square fills with stalls selling cabbages, apples, "
    "smoked fish and knitted hats, and conversations that began the week before continue as if they had "
    "never been interrupted. Nobody hurries. The ferry horn sounds twice, the gulls answer, and somewhere a "
    "radio plays an old song that everyone over fifty knows by heart and nobody under twenty has ever heard.",
    "Photosynthesis is usually described in a single sentence, but the process it names is a long chain of "
    "carefully arranged events. Light is absorbed by pigment molecules packed into membranes inside the "
    "chloroplast, and the energy is passed from one molecule to the next until it reaches a reaction centre, "
    "where it drives an electron away from a special pair of chlorophyll molecules. The missing electron is "
    "replaced by splitting water, which releases oxygen as a by-product, while the excited electron travels "
    "along a transport chain that pumps protons across the membrane. The resulting gradient powers an enzyme "
    "that makes ATP, and a second photosystem lifts electrons high enough to reduce NADP into NADPH. Both "
    "molecules are then spent in the Calvin cycle, where carbon dioxide from the air is fixed onto a "
    "five-carbon sugar by the enzyme rubisco, which is slow, easily confused by oxygen, and probably the most "
    "abundant protein on Earth. Plants compensate for its flaws by making enormous amounts of it, and some, "
    "like maize and sugar cane, concentrate carbon dioxide around it to keep it working in hot, dry weather.",
]
