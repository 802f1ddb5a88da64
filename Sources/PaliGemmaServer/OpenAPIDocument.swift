/// GET /openapi.json: the OpenAPI 3.1 description of every route (a test checks that its paths
/// are exactly the server's, and schemathesis fuzzes the server from it).
enum OpenAPIDocument {
    static let text = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "PaliGemma for Swift server",
    "version": "1.0.0",
    "description": "OpenAI-compatible chat and text completions, typed PaliGemma task endpoints (boxes in pixels, masks), tokenizer, models, health and Prometheus metrics. Images are data: URLs (base64), paths under the server's --media-root, or http(s) URLs when the server allows remote images (--allow-remote-images; public addresses only). Errors use OpenAI's shape. With --api-key, every route but /health needs Authorization: Bearer <key> or X-Api-Key."
  },
  "components": {
    "securitySchemes": {
      "bearer": {"type": "http", "scheme": "bearer"},
      "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
          "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
              "message": {"type": "string"},
              "type": {"type": "string"},
              "param": {"type": ["string", "null"]},
              "code": {"type": "string"}
            }
          }
        }
      },
      "Sampling": {
        "type": "object",
        "properties": {
          "max_tokens": {"type": "integer", "minimum": 1, "description": "Default 256; at most the server's --max-tokens-limit."},
          "max_completion_tokens": {"type": "integer", "minimum": 1},
          "temperature": {"type": "number", "minimum": 0, "maximum": 2, "description": "0 or absent: greedy."},
          "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
          "seed": {"type": "integer"},
          "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
          "n": {"type": "integer", "const": 1},
          "stream": {"type": "boolean"},
          "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
        }
      },
      "Usage": {
        "type": "object",
        "properties": {
          "prompt_tokens": {"type": "integer"},
          "completion_tokens": {"type": "integer"},
          "total_tokens": {"type": "integer"}
        }
      },
      "ChatCompletionRequest": {
        "allOf": [{"$ref": "#/components/schemas/Sampling"}, {
          "type": "object",
          "required": ["messages"],
          "properties": {
            "model": {"type": "string", "description": "The base model's id, or the name of an adapter served with --adapter NAME=DIR (its LoRA terms apply to this request). Without served adapters any value means the base model; with them an unknown name is a 404 model_not_found."},
            "messages": {
              "type": "array",
              "minItems": 1,
              "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                  "role": {"type": "string", "enum": ["user", "system", "developer", "assistant"]},
                  "content": {"oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"oneOf": [
                      {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}},
                      {"type": "object", "required": ["type", "image_url"], "properties": {"type": {"const": "image_url"},
                        "image_url": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}}}},
                      {"type": "object", "required": ["type", "video_url"], "properties": {"type": {"const": "video_url"},
                        "video_url": {"$ref": "#/components/schemas/Video"}}}
                    ]}}
                  ]}
                }
              }
            }
          }
        }]
      },
      "Video": {
        "description": "A video file (a data: URL, a path under --media-root, or an http(s) URL with --allow-remote-images; at most --max-video-bytes) whose frames become the prompt's images: the URL string alone, or an object with the sampling (every stride-th frame from start seconds, repeated in order when the video is short; at most --max-video-frames in a request).",
        "oneOf": [
          {"type": "string"},
          {"type": "object", "required": ["url"], "properties": {
            "url": {"type": "string"},
            "frames": {"type": "integer", "minimum": 1, "default": 16},
            "stride": {"type": "integer", "minimum": 1, "default": 9},
            "start": {"type": "number", "minimum": 0, "default": 0}
          }}
        ]
      },
      "ChatCompletion": {
        "type": "object",
        "properties": {
          "id": {"type": "string"},
          "object": {"const": "chat.completion"},
          "created": {"type": "integer"},
          "model": {"type": "string"},
          "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"},
            "message": {"type": "object", "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}},
            "finish_reason": {"type": "string", "enum": ["stop", "length"]}
          }}},
          "usage": {"$ref": "#/components/schemas/Usage"}
        }
      },
      "CompletionRequest": {
        "allOf": [{"$ref": "#/components/schemas/Sampling"}, {
          "type": "object",
          "required": ["prompt"],
          "oneOf": [{"required": ["image"]}, {"required": ["images"]}, {"required": ["video"]}],
          "properties": {
            "model": {"type": "string", "description": "The base model's id, or the name of an adapter served with --adapter NAME=DIR (its LoRA terms apply to this request). Without served adapters any value means the base model; with them an unknown name is a 404 model_not_found."},
            "prompt": {"type": "string", "description": "The PaliGemma prompt as it is, e.g. \"caption en\"."},
            "image": {"type": "string", "description": "A data: URL, a path under --media-root, or an http(s) URL with --allow-remote-images."},
            "images": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                       "description": "Several images for one prompt, in order (instead of image); at most --max-images."},
            "video": {"$ref": "#/components/schemas/Video"}
          }
        }]
      },
      "TextCompletion": {
        "type": "object",
        "properties": {
          "id": {"type": "string"},
          "object": {"const": "text_completion"},
          "created": {"type": "integer"},
          "model": {"type": "string"},
          "choices": {"type": "array", "items": {"type": "object", "properties": {
            "text": {"type": "string"}, "index": {"type": "integer"}, "finish_reason": {"type": ["string", "null"]}
          }}},
          "usage": {"$ref": "#/components/schemas/Usage"}
        }
      },
      "TaskRequest": {
        "allOf": [{"$ref": "#/components/schemas/Sampling"}, {
          "type": "object",
          "oneOf": [{"required": ["image"]}, {"required": ["images"]}, {"required": ["video"]}],
          "properties": {
            "model": {"type": "string", "description": "The base model's id, or the name of an adapter served with --adapter NAME=DIR (its LoRA terms apply to this request). Without served adapters any value means the base model; with them an unknown name is a 404 model_not_found."},
            "image": {"type": "string", "description": "A data: URL, a path under --media-root, or an http(s) URL with --allow-remote-images."},
            "images": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                       "description": "Several images for one prompt, in order (text tasks only; detect and segment take one)."},
            "video": {"$ref": "#/components/schemas/Video", "description": "A video's frames as the images (text tasks only)."},
            "lang": {"type": "string", "description": "caption, describe, answer: the language code (default en)."},
            "question": {"type": "string", "description": "answer: the question."},
            "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "detect: what to look for."},
            "label": {"type": "string", "description": "segment: what to segment (detect: one label)."}
          }
        }]
      },
      "TaskResult": {
        "type": "object",
        "description": "The JSON of the CLI's --json (docs/OUTPUTS.md).",
        "properties": {
          "text": {"type": "string"},
          "tokens": {"type": "array", "items": {"type": "integer"}},
          "prompt": {"type": "string"},
          "prompt_tokens": {"type": "integer"},
          "generated_tokens": {"type": "integer"},
          "stop_reason": {"type": "string", "enum": ["eos", "length", "cancelled"]},
          "timings": {"type": "object"},
          "image_size": {"type": "array", "items": {"type": "integer"}},
          "detections": {"type": "array", "items": {"type": "object", "properties": {
            "label": {"type": "string"},
            "box": {"type": "array", "items": {"type": ["number", "null"]}},
            "box_normalized": {"type": "array", "items": {"type": ["number", "null"]}}
          }}},
          "segments": {"type": "array", "items": {"type": "object"}},
          "skipped": {"type": "array", "items": {"type": "object"}},
          "masks_decoded": {"type": "boolean"}
        }
      }
    },
    "responses": {
      "Error": {"description": "An error in OpenAI's shape.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "security": [{"bearer": []}, {"apiKey": []}, {}],
  "paths": {
    "/v1/chat/completions": {
      "post": {
        "summary": "OpenAI chat completion: the last user message's text is the prompt, its image_url parts the images and its video_url parts' frames, in order (at most --max-images, --max-video-frames).",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}},
        "responses": {
          "200": {"description": "The completion; with stream, server-sent events of chat.completion.chunk objects ending in data: [DONE].",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}}, "text/event-stream": {"schema": {"type": "string"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
          "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/completions": {
      "post": {
        "summary": "A raw PaliGemma prompt and an image.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CompletionRequest"}}}},
        "responses": {
          "200": {"description": "The completion; with stream, server-sent events ending in data: [DONE].",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TextCompletion"}}, "text/event-stream": {"schema": {"type": "string"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
          "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/caption": {"post": {"summary": "caption <lang>", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskRequest"}}}},
      "responses": {"200": {"description": "The answer.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskResult"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/v1/describe": {"post": {"summary": "describe <lang>", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskRequest"}}}},
      "responses": {"200": {"description": "The answer.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskResult"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/v1/ocr": {"post": {"summary": "ocr", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskRequest"}}}},
      "responses": {"200": {"description": "The answer.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskResult"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/v1/answer": {"post": {"summary": "answer <lang> <question> (needs question)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskRequest"}}}},
      "responses": {"200": {"description": "The answer.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskResult"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/v1/detect": {"post": {"summary": "detect <label> ; <label> (needs labels): boxes in pixels and normalised", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskRequest"}}}},
      "responses": {"200": {"description": "The answer with detections.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskResult"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/v1/segment": {"post": {"summary": "segment <label> (needs label): boxes, and masks when the server has a mask decoder", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskRequest"}}}},
      "responses": {"200": {"description": "The answer with detections and segments.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskResult"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/tokenize": {
      "post": {
        "summary": "Token ids of a prompt: as the model sees it (image tokens, <bos>, prompt, newline), or with add_special_tokens false the text's own.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
          "prompt": {"type": "string"}, "text": {"type": "string"}, "add_special_tokens": {"type": "boolean"}}}}}},
        "responses": {
          "200": {"description": "The ids.", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "tokens": {"type": "array", "items": {"type": "integer"}}, "count": {"type": "integer"}, "max_positions": {"type": "integer"}}}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/detokenize": {
      "post": {
        "summary": "Text of token ids (special pieces written out).",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["tokens"], "properties": {
          "tokens": {"type": "array", "items": {"type": "integer"}}}}}}},
        "responses": {
          "200": {"description": "The text.", "content": {"application/json": {"schema": {"type": "object", "properties": {"text": {"type": "string"}}}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/models": {
      "get": {
        "summary": "The served model: id, image size, image tokens, positions, capabilities.",
        "responses": {
          "200": {"description": "OpenAI's model list.", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": {"type": "object"}}}}}}},
          "401": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/health": {
      "get": {
        "summary": "200 when ready; 503 while loading, after a failed load, while shutting down, or when the engine loop has stalled.",
        "security": [],
        "responses": {
          "200": {"description": "Ready.", "content": {"application/json": {"schema": {"type": "object"}}}},
          "503": {"description": "Not ready.", "content": {"application/json": {"schema": {"type": "object"}}}}
        }
      }
    },
    "/metrics": {
      "get": {
        "summary": "Prometheus text format (docs/SERVER.md lists the metrics).",
        "responses": {
          "200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
          "401": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/openapi.json": {
      "get": {
        "summary": "This document.",
        "responses": {
          "200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}},
          "401": {"$ref": "#/components/responses/Error"}
        }
      }
    }
  }
}
"""#
}
