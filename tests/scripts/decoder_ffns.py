"""Writes a decoder-style model with the two FFN forms decoder-only LLMs
use, seeded random weights: GPT-2's (MatMul, bias, tanh-GELU spelled out
with Pow/Tanh, MatMul, bias) and LLaMA's gated one (SiLU(x·Wg) ⊙ (x·Wu) →
Wd), each in a residual; then a HardSwish FFN in a residual (an
activation onnxruntime's MoE op lacks), and a head of two ReLU/SiLU FFNs
that widen (32 → 48) and narrow (48 → 16) the features.
usage: decoder_ffns.py MODEL.onnx INPUTS.npz"""
import sys

import numpy as np
import onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
r=np.random.default_rng(0)
d,hid=32,128
def c(name, a): return nh.from_array(np.asarray(a,np.float32), name)
inits=[c('w1',r.standard_normal((d,hid))*0.2),c('b1',r.standard_normal(hid)*0.1),c('w2',r.standard_normal((hid,d))*0.2),c('b2',r.standard_normal(d)*0.1),
       c('wg',r.standard_normal((d,hid))*0.2),c('wu',r.standard_normal((d,hid))*0.2),c('wd',r.standard_normal((hid,d))*0.2),
       c('w3',r.standard_normal((d,hid))*0.2),c('w4',r.standard_normal((hid,d))*0.2),
       c('w5',r.standard_normal((d,64))*0.2),c('b5',r.standard_normal(64)*0.1),c('w6',r.standard_normal((64,48))*0.2),
       c('w7',r.standard_normal((48,96))*0.2),c('w8',r.standard_normal((96,16))*0.2),c('b8',r.standard_normal(16)*0.1),
       c('half',0.5),c('one',1.0),c('k0',np.sqrt(2/np.pi)),c('k1',0.044715),c('three',3.0)]
n=[]
# GPT-2 style tanh-GELU FFN
n+= [h.make_node('MatMul',['x','w1'],['a0'],name='mlp/c_fc/MatMul'), h.make_node('Add',['a0','b1'],['a'],name='mlp/c_fc/Add'),
     h.make_node('Pow',['a','three'],['a3']), h.make_node('Mul',['a3','k1'],['a4']), h.make_node('Add',['a','a4'],['a5']),
     h.make_node('Mul',['a5','k0'],['a6']), h.make_node('Tanh',['a6'],['a7']), h.make_node('Add',['a7','one'],['a8']),
     h.make_node('Mul',['a','half'],['a9']), h.make_node('Mul',['a9','a8'],['g']),
     h.make_node('MatMul',['g','w2'],['o0'],name='mlp/c_proj/MatMul'), h.make_node('Add',['o0','b2'],['o'],name='mlp/c_proj/Add'),
     h.make_node('Add',['x','o'],['y1'])]
# LLaMA style gated SiLU FFN
n+= [h.make_node('MatMul',['y1','wg'],['gp'],name='mlp/gate_proj/MatMul'), h.make_node('Sigmoid',['gp'],['gs']), h.make_node('Mul',['gp','gs'],['ga']),
     h.make_node('MatMul',['y1','wu'],['up'],name='mlp/up_proj/MatMul'), h.make_node('Mul',['ga','up'],['gu']),
     h.make_node('MatMul',['gu','wd'],['dn'],name='mlp/down_proj/MatMul'), h.make_node('Add',['y1','dn'],['y2'])]
# HardSwish FFN, then the widening and narrowing head
n+= [h.make_node('MatMul',['y2','w3'],['hp'],name='hs/fc1/MatMul'), h.make_node('HardSwish',['hp'],['ha']),
     h.make_node('MatMul',['ha','w4'],['hd'],name='hs/fc2/MatMul'), h.make_node('Add',['y2','hd'],['y3']),
     h.make_node('MatMul',['y3','w5'],['e0'],name='head/wide/fc1/MatMul'), h.make_node('Add',['e0','b5'],['e1']), h.make_node('Relu',['e1'],['e2']),
     h.make_node('MatMul',['e2','w6'],['e3'],name='head/wide/fc2/MatMul'),
     h.make_node('MatMul',['e3','w7'],['f0'],name='head/narrow/fc1/MatMul'), h.make_node('Sigmoid',['f0'],['f1']), h.make_node('Mul',['f0','f1'],['f2']),
     h.make_node('MatMul',['f2','w8'],['f3'],name='head/narrow/fc2/MatMul'), h.make_node('Add',['f3','b8'],['y'])]
g=h.make_graph(n,'dec',[h.make_tensor_value_info('x',T.FLOAT,['B','S',d])],[h.make_tensor_value_info('y',T.FLOAT,['B','S',16])],inits)
onnx.save(h.make_model(g,opset_imports=[h.make_opsetid('',17)]),sys.argv[1])
np.savez(sys.argv[2], x=r.standard_normal((2,5,d)).astype(np.float32))

