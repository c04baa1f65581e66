"""The one home of scoring: a draft against its signed impression, and means over many.

- ``rouge``: ROUGE-1/2/L F1 exactly as the paper's references compute them (jieba for Chinese).
- ``clinical``: the findings diff (missed and over-called findings), a proxy for the paper's
  clinical criteria.
- ``pair``: one draft against one reference: both of the above in one frozen record.
- ``aggregate``: the metric names and their means over a set of scores.

Why here, in model/: scoring is about model output and depends on nothing but jieba, nltk and
kernel.codes. Every caller already depends on model/ (streams hosts the drafter, training
refits it, bench and the demo report on it), so this is the lowest package all of them share;
in streams/ it made training import the streaming layer. Nothing below imports torch.
"""
