// Twin structures: view vector and normal in world space, clip distances, structure index.
layout(location = 0) in vec3 a_position;   // twin coordinates, metres
layout(location = 1) in vec3 a_normal;
layout(location = 2) in uint a_structure;  // per draw (instanced attribute or constant)

uniform mat4 u_model;          // twin -> world
uniform mat3 u_normal_matrix;  // inverse transpose of u_model's upper 3x3
uniform vec4 u_clip[6];        // world-space planes: keep dot(xyz, p) + w >= 0
uniform int u_clip_count;

out vec3 v_view;    // from the surface to this eye, world space, metres (normalised per fragment)
out vec3 v_normal;
flat out uint v_structure;
#if CAPS
// Only the clip-plane variant writes clip distances (without planes none is enabled, and six
// unused outputs per vertex still cost every vertex) and the position its caps need.
out vec3 v_world;
out float gl_ClipDistance[6];
#endif

void main() {
  int eye = EYE;
  vec4 world = u_model * vec4(a_position, 1.0);
  v_view = u_eye_pos[eye] - world.xyz;
  v_normal = u_normal_matrix * a_normal;
  v_structure = a_structure;
#if CAPS
  v_world = world.xyz;
  for (int i = 0; i < 6; ++i) {
    gl_ClipDistance[i] = i < u_clip_count ? dot(u_clip[i], vec4(world.xyz, 1.0)) : 1.0;
  }
#endif
  gl_Position = u_view_proj[eye] * world;
  set_layer(eye);
}
