from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.eval.retrieval import retrieval_metrics
from keras_clip.eval.zero_shot import load_templates, topk_accuracy, zero_shot_classifier, zero_shot_evaluate
from keras_clip.eval.callback import ZeroShotRetrievalCallback
