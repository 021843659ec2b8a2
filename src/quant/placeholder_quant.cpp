// placeholder so the layer's library exists; removed when the layer has code
